import { deviceStatusSchema } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { DeviceStore } from '../store/device-store.js';

/** Online/offline announcements, including the broker-sent will message. */
export function statusHandler(devices: DeviceStore, log: Logger) {
  return defineHandler({
    kind: 'status',
    schema: deviceStatusSchema,
    handle(deviceId, status) {
      devices.setStatus(status);
      log.info({ deviceId, state: status.state, reason: status.reason }, 'device status');
    },
  });
}
