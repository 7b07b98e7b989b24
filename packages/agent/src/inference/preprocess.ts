// The preprocessing lives in @perch/shared: the registry computes each model's golden output with it.
export { createPreprocessor, inputDims, type Preprocessor } from '@perch/shared';
