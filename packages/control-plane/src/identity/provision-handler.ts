import { deviceTopic, encodeJson, provisionRequestSchema, provisionResponseSchema, provisionSealingContext, sealSecret, type ProvisionResponse } from '@perch/shared';
import type { ControlPlaneBus } from '../bus/control-plane-bus.js';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { DeviceIdentityService } from './device-identity-service.js';

/**
 * A claimant's `provision/request`, answered on its `provision/response` at
 * QoS 1: its credentials, the password sealed to the request's public key,
 * or why not. A request that fails the schema is dropped by the dispatcher
 * and gets no answer; the box asks again. Credentials are answered only once
 * the broker accepts them (an external broker is told first).
 */
export function provisionHandler(identity: Pick<DeviceIdentityService, 'claimCredentials'>, bus: Pick<ControlPlaneBus, 'publish'>) {
  return defineHandler({
    kind: 'provision/request',
    schema: provisionRequestSchema,
    handle: async (deviceId, req) => {
      const context = provisionSealingContext(deviceId, req.requestId);
      const respond = (answer: ProvisionResponse) => bus.publish(deviceTopic(deviceId, 'provision/response'), encodeJson(provisionResponseSchema.parse(answer)), { qos: 1 });
      // Sealing is tried before the claim: a key that cannot be sealed to must not cost a token use or leave credentials nobody received.
      try {
        sealSecret('probe', req.publicKey, context);
      } catch (err) {
        await respond({ requestId: req.requestId, deviceId, status: 'refused', code: 'public-key-unusable', reason: `cannot seal to this public key: ${(err as Error).message}`.slice(0, 1000) });
        return;
      }
      const result = await identity.claimCredentials(deviceId, req.claimToken, req.agentVersion);
      const answer: ProvisionResponse =
        result.status === 'issued'
          ? {
              requestId: req.requestId,
              deviceId,
              status: 'issued',
              username: result.username,
              password: sealSecret(result.password, req.publicKey, context),
              issuedAt: result.issuedAt,
            }
          : { requestId: req.requestId, deviceId, ...result };
      await respond(answer);
    },
  });
}
