/** Class labels of the pet-park classifier, in output-index order. */
export const PET_PARK_LABELS = ['empty', 'cat', 'dog'] as const;

export type PetParkLabel = (typeof PET_PARK_LABELS)[number];

export function labelIndex(label: PetParkLabel): number {
  return PET_PARK_LABELS.indexOf(label);
}
