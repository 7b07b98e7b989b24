export { ControlPlane } from './control-plane.js';
export { loadControlPlaneConfig, ConfigError, type ControlPlaneConfig, type ControlPlaneConfigInput } from './config/control-plane-config.js';
export { createLogger } from './logger.js';
export * from './training/index.js';
