import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from 'pino';
import { UnknownModelVersionError } from '../desired-state/desired-state-service.js';
import { ModelCheckError } from '../registry/onnx-model-check.js';
import { VersionExistsError } from '../registry/model-registry.js';
import { RolloutError } from '../rollouts/rollout-errors.js';
import { RolloutSpecError } from '../rollouts/rollout-spec.js';
import { ApiError } from './api-error.js';

/** Maps domain errors to ApiError in one place; anything unexpected is a logged 500 with no internals leaked. Logs never carry headers or bodies, so no token reaches them. */
function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ModelCheckError) return new ApiError(422, 'invalid_model', err.message, err.field);
  if (err instanceof VersionExistsError) return new ApiError(409, 'version_exists', err.message, 'version');
  if (err instanceof UnknownModelVersionError) return new ApiError(404, 'unknown_model_version', err.message, 'version');
  if (err instanceof RolloutError) return new ApiError(err.status, err.code, err.message, err.field);
  if (err instanceof RolloutSpecError) return new ApiError(400, 'validation_failed', err.message, err.field);
  if (err instanceof HTTPException) {
    if (err.status === 413) return new ApiError(413, 'payload_too_large', err.message || 'payload too large');
    if (err.status === 415) return new ApiError(415, 'unsupported_media_type', err.message || 'unsupported media type');
    if (err.status === 404) return new ApiError(404, 'not_found', err.message || 'not found');
    // The validators' own refusals: a body that is not the JSON or form it says it is.
    return new ApiError(400, 'validation_failed', `body: ${err.message || 'bad request'}`, 'body');
  }
  return new ApiError(500, 'internal', 'internal error');
}

export function errorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    const api = toApiError(err);
    if (api.status >= 500) log.error({ err, path: c.req.path }, 'API request failed');
    else log.info({ path: c.req.path, status: api.status, code: api.code, message: api.message }, 'API request refused');
    if (api.status === 401) c.header('WWW-Authenticate', 'Bearer realm="perch"');
    return c.json(api.toJSON(), api.status);
  };
}
