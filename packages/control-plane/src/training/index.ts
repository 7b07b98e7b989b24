/** Public surface of the synthetic-data and demo-model training code. */
export { buildDemoModel, DEMO_MODEL_NAME, DEMO_MODEL_VERSION, TRAINING_RECIPE, type BuildDemoModelOptions, type DemoModel } from './demo-model.js';
export { trainedModelFileSchema, type TrainedModelFile } from './model-metadata.js';
export { trainClassifier, type TrainClassifierOptions, type TrainedClassifier } from './train-classifier.js';
export { scoreVideo, type VideoScore } from './score-video.js';
export { decodeVideoFrames } from './decode-video-frames.js';
export { imagesToNchw, DEFAULT_NORMALIZATION, type Normalization } from './preprocess.js';
export { PET_PARK_LABELS, type PetParkLabel } from './pet-park/labels.js';
export { generateDataset, type DatasetOptions, type PetParkSample } from './pet-park/dataset.js';
export { makePetParkVideo, schedulePathFor, type PetParkVideo, type PetParkVideoOptions, type ScheduleEntry } from './pet-park/camera-video.js';
export { renderScene, renderScenes, rasterizeScenes, encodePng } from './pet-park/render-scene.js';
export { sampleScene } from './pet-park/sample-scene.js';
export { createRng, mulberry32, deriveSeed, type Rng } from './pet-park/prng.js';
export type { RgbImage } from './pet-park/rgb-image.js';
