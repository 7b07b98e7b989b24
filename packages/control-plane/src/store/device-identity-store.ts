import type { Db } from './database.js';

export interface DeviceCredentialRecord {
  deviceId: string;
  /** hex SHA-256 of the secret; the secret itself is never stored */
  secretSha256: string;
  issuedAt: number;
  /** the claim token it was claimed with; null when an operator provisioned it */
  claimTokenId: string | null;
  /** first connect with it; null while never used */
  usedAt: number | null;
}

export interface Revocation {
  at: number;
  reason: string | null;
}

interface CredentialRow {
  device_id: string;
  secret_sha256: string;
  issued_at: number;
  claim_token_id: string | null;
  used_at: number | null;
}

const toRecord = (r: CredentialRow): DeviceCredentialRecord => ({
  deviceId: r.device_id,
  secretSha256: r.secret_sha256,
  issuedAt: r.issued_at,
  claimTokenId: r.claim_token_id,
  usedAt: r.used_at,
});

/** Who may connect as a device: its one credential and whether it is revoked (`devices.revoked_*`). */
export class DeviceIdentityStore {
  private readonly getStmt;
  private readonly putStmt;
  private readonly usedStmt;
  private readonly deleteStmt;
  private readonly revocationStmt;
  private readonly revokeStmt;
  private readonly readmitStmt;
  private readonly withCredentialsStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare('SELECT * FROM device_credentials WHERE device_id = ?');
    this.putStmt = db.prepare(
      `INSERT INTO device_credentials (device_id, secret_sha256, issued_at, claim_token_id, used_at)
       VALUES (@deviceId, @secretSha256, @issuedAt, @claimTokenId, NULL)
       ON CONFLICT (device_id) DO UPDATE SET secret_sha256 = excluded.secret_sha256, issued_at = excluded.issued_at,
         claim_token_id = excluded.claim_token_id, used_at = NULL`,
    );
    this.usedStmt = db.prepare('UPDATE device_credentials SET used_at = ? WHERE device_id = ? AND used_at IS NULL');
    this.deleteStmt = db.prepare('DELETE FROM device_credentials WHERE device_id = ?');
    this.revocationStmt = db.prepare('SELECT revoked_at AS at, revoked_reason AS reason FROM devices WHERE id = ? AND revoked_at IS NOT NULL');
    this.revokeStmt = db.prepare('UPDATE devices SET revoked_at = ?, revoked_reason = ? WHERE id = ?');
    this.readmitStmt = db.prepare('UPDATE devices SET revoked_at = NULL, revoked_reason = NULL WHERE id = ?');
    this.withCredentialsStmt = db.prepare('SELECT device_id FROM device_credentials ORDER BY device_id').pluck();
  }

  credential(deviceId: string): DeviceCredentialRecord | null {
    const row = this.getStmt.get(deviceId) as CredentialRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** Replaces the device's credential; the device row must exist. */
  putCredential(rec: Omit<DeviceCredentialRecord, 'usedAt'>): void {
    this.putStmt.run(rec);
  }

  /** True the first time only. */
  markUsed(deviceId: string, at: number): boolean {
    return this.usedStmt.run(at, deviceId).changes > 0;
  }

  deviceIdsWithCredentials(): string[] {
    return this.withCredentialsStmt.all() as string[];
  }

  deleteCredential(deviceId: string): boolean {
    return this.deleteStmt.run(deviceId).changes > 0;
  }

  revocation(deviceId: string): Revocation | null {
    return (this.revocationStmt.get(deviceId) as Revocation | undefined) ?? null;
  }

  revoke(deviceId: string, reason: string | null, at: number): void {
    this.revokeStmt.run(at, reason, deviceId);
  }

  readmit(deviceId: string): void {
    this.readmitStmt.run(deviceId);
  }
}
