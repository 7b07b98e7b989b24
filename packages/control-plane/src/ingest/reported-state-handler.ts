import { reportedStateSchema } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { DeviceStore } from '../store/device-store.js';

/** The device's actual state: what it runs and where its deployment stands. */
export function reportedStateHandler(devices: DeviceStore, log: Logger) {
  return defineHandler({
    kind: 'reported',
    schema: reportedStateSchema,
    handle(deviceId, state) {
      const before = devices.get(deviceId)?.reported?.deployment;
      devices.setReported(state);
      const d = state.deployment;
      if (before?.phase !== d.phase || before.generation !== d.generation) {
        log.info(
          { deviceId, phase: d.phase, generation: d.generation, target: d.target, reason: d.reason, active: state.active },
          'device deployment',
        );
      }
    },
  });
}
