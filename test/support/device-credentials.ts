import type { ControlPlane } from '@perch/control-plane';

/** MQTT credentials a device `deviceId` may connect to `cp`'s broker with (username = client id = device id). */
export function deviceCredentials(cp: ControlPlane, deviceId: string): { username: string; password: string } {
  return { username: deviceId, password: cp.deviceToken };
}
