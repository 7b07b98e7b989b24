import type { ControlPlane } from '@perch/control-plane';

/** Fresh MQTT credentials for device `deviceId` on `cp`'s broker (username = client id = device id), as an operator issues them; resolves once the broker accepts them. */
export async function freshDeviceCredentials(cp: ControlPlane, deviceId: string): Promise<{ username: string; password: string }> {
  const { username, password } = await cp.issueDeviceCredentials(deviceId);
  return { username, password };
}

