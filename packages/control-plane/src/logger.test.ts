import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, log: createLogger('info', 'test', stream) };
}

describe('logger', () => {
  it('redacts passwords, tokens, claim tokens and authorization headers wherever a log line carries them', () => {
    const { lines, log } = capture();
    log.info(
      {
        password: 'hunter2-top',
        token: 'perch_admin_secret',
        claimToken: 'claim-secret-1',
        device: { id: 'gate-7', password: 'hunter2-nested' },
        req: { method: 'GET', headers: { authorization: 'Bearer perch_abc', Authorization: 'Bearer perch_def', host: 'cp' } },
        headers: { cookie: 'session=s3cret' },
      },
      'something happened',
    );
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    for (const secret of ['hunter2', 'perch_admin_secret', 'claim-secret-1', 'perch_abc', 'perch_def', 's3cret']) expect(line).not.toContain(secret);
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(entry).toMatchObject({
      msg: 'something happened',
      password: '[redacted]',
      token: '[redacted]',
      claimToken: '[redacted]',
      device: { id: 'gate-7', password: '[redacted]' },
      req: { method: 'GET', headers: { authorization: '[redacted]', Authorization: '[redacted]', host: 'cp' } },
      headers: { cookie: '[redacted]' },
    });
  });

  it('leaves everything else as it was', () => {
    const { lines, log } = capture();
    log.info({ deviceId: 'gate-7', tokenId: 'tok-1', reason: 'password rotated' }, 'plain');
    expect(JSON.parse(lines[0]!)).toMatchObject({ deviceId: 'gate-7', tokenId: 'tok-1', reason: 'password rotated' });
  });
});
