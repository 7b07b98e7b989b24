export { ControlPlane } from './control-plane.js';
export { loadControlPlaneConfig, ConfigError, type ControlPlaneConfig, type ControlPlaneConfigInput } from './config/control-plane-config.js';
export { createLogger } from './logger.js';
export { buildDemoModel, DEMO_MODEL_NAME, DEMO_MODEL_VERSION, type DemoModel } from './training/demo-model.js';
export { makePetParkVideo, type PetParkVideo } from './training/pet-park/camera-video.js';
