import { detectionEventSchema } from '@perch/shared';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { Db } from '../store/database.js';

/** Detection events, stored once per (device, seq). */
export function eventIngestHandler(db: Db) {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO detection_events (device_id, seq, event_id, kind, camera_id, label, at, payload_json)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  return defineHandler({
    kind: 'events',
    schema: detectionEventSchema,
    handle(deviceId, e) {
      insert.run(deviceId, e.seq, e.eventId, e.kind, e.cameraId, e.label, e.at, JSON.stringify(e));
    },
  });
}
