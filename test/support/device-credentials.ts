import type { ControlPlane } from '@perch/control-plane';

/** Fresh MQTT credentials for device `deviceId` on `cp`'s broker (username = client id = device id), as an operator provisions them. */
export function deviceCredentials(cp: ControlPlane, deviceId: string): { username: string; password: string } {
  const { username, password } = cp.provisionDevice(deviceId);
  return { username, password };
}
