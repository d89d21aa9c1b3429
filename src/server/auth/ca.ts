/**
 * The cluster's two certificate authorities (user CA, host CA), whatever the
 * state store (server/storage: the dir backend keeps today's files, the
 * postgres backend a table). This module holds what does not depend on where
 * they are: making keys, the rotation rules, the trust windows, and a cached
 * snapshot that signing reads synchronously.
 *
 * Life cycle: `open()` reads both CAs, creating each on first use with a new
 * ed25519 key (another process may win that race: its CA is used), and
 * caches them; `get()` returns the cached snapshot with the trust windows
 * applied as of now; `refresh()` (called on the backend's watch()
 * notifications) re-reads a CA whose revision changed, so a running server
 * picks up `tctl auth rotate`; `rotate()` goes through the backend's locked
 * update.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { UserError } from '../../errors.js';
import { encodeOpenSSHPrivateKey, fingerprintSha256, generateKeyPair, parseOpenSSHPrivateKey, type PublicKey } from '../../sshcert/index.js';
import { CA_TYPES, type CaBackend, type CaType, type StoredCa, type StoredCaKey } from '../storage/backend.js';

export { CA_TYPES, type CaType };

/** One CA key pair and how long it is trusted. */
export interface CaKey {
  id: string;
  privateKey: KeyObject;
  publicKey: PublicKey;
  createdAt: Date;
  /** Set on keys rotated out: trusted (exported, accepted) until then. */
  trustedUntil: Date | undefined;
}

/** A CA as it stands now: the key that signs and every key still trusted (active first). */
export interface CaSet {
  type: CaType;
  active: CaKey;
  trusted: CaKey[];
}

/** Receives warnings the store wants a human to see (a new CA, fixed permissions). */
export type Warn = (message: string) => void;

/** Loads, creates and rotates the CAs through a `CaBackend`; signing reads a cached snapshot. */
export class CaStore {
  private readonly snapshots = new Map<CaType, { revision: string; set: CaSet }>();
  /** Parsed keys by id: a PEM is parsed once, whatever the refreshes. */
  private readonly parsed = new Map<string, { privateKey: KeyObject; publicKey: PublicKey }>();

  constructor(
    private readonly backend: CaBackend,
    private readonly clock: () => Date,
    private readonly warn: Warn = () => {},
    /** Where the CAs are, for messages (the backend's location). */
    readonly location = 'the state store',
  ) {}

  /**
   * Reads both CAs, creating either on first use (warning `created the <type>
   * CA ...`). @throws UserError CA_CORRUPT rather than replace a broken CA;
   * StoreUnavailableError when the store cannot be reached.
   */
  async open(): Promise<void> {
    for (const type of CA_TYPES) {
      let stored = await this.backend.read(type);
      if (!stored) {
        const first = newKey(type, this.clock());
        stored = await this.backend.create(type, first.stored);
        if (stored.active === first.stored.id) this.warn(`created the ${type} CA in ${this.location} (fingerprint ${fingerprintSha256(first.publicKey.blob)})`);
      }
      this.install(stored);
    }
  }

  /**
   * The CA of this type as last read, with keys whose grace period has ended
   * dropped as of now. Synchronous: signing and certificate checks call it
   * per request. @throws Error when `open()` has not run.
   */
  get(type: CaType): CaSet {
    const snap = this.snapshots.get(type);
    if (!snap) throw new Error(`the ${type} CA is not loaded: CaStore.open() must run first`);
    return withTrustNow(snap.set, this.clock());
  }

  /** Re-reads the CA(s) from the store; a CA whose revision did not change keeps its snapshot. */
  async refresh(type?: CaType): Promise<void> {
    for (const t of type ? [type] : CA_TYPES) {
      const stored = await this.backend.read(t);
      if (!stored) throw new UserError('CA_CORRUPT', `the ${t} CA in ${this.location} is gone`, { hint: 'restore it from a backup: a new CA would cut off every node and client that trusts the old one' });
      this.install(stored);
    }
  }

  /**
   * Makes a new signing key; every old key (the one just retired and any
   * still in a grace period) stays trusted at most `graceSeconds` more
   * (0 = not at all). Returns the new set.
   */
  async rotate(type: CaType, graceSeconds: number): Promise<CaSet> {
    const now = this.clock();
    const until = new Date(now.getTime() + graceSeconds * 1000).toISOString();
    const next = newKey(type, now);
    const stored = await this.backend.update(type, (current) => ({
      type,
      active: next.stored.id,
      keys: [
        next.stored,
        // The grace period bounds every old key, not only the one just retired:
        // `--grace-period=0` after a compromise must end all old trust at once.
        ...current.keys.map((k) => (k.id === current.active || k.trustedUntil === undefined || k.trustedUntil > until ? { ...k, trustedUntil: until } : k)),
      ],
    }));
    this.install(stored);
    return this.get(type);
  }

  private install(stored: StoredCa): void {
    const snap = this.snapshots.get(stored.type);
    if (snap && snap.revision === stored.revision) return;
    const keys = stored.keys.map((k) => this.toKey(stored.type, k));
    const active = keys.find((k) => k.id === stored.active);
    if (!active) throw corrupt(stored.type, this.location, `it names active key ${stored.active}, which is not in its key list`);
    this.snapshots.set(stored.type, { revision: stored.revision, set: { type: stored.type, active, trusted: [active, ...keys.filter((k) => k !== active)] } });
  }

  private toKey(type: CaType, k: StoredCaKey): CaKey {
    let p = this.parsed.get(k.id);
    if (!p) {
      try {
        p = parseOpenSSHPrivateKey(k.privateKeyPem);
      } catch (err) {
        throw corrupt(type, this.location, `CA key ${k.id} is not a valid OpenSSH private key: ${(err as Error).message}`, err);
      }
      this.parsed.set(k.id, p);
    }
    return { id: k.id, privateKey: p.privateKey, publicKey: p.publicKey, createdAt: new Date(k.created), trustedUntil: k.trustedUntil !== undefined ? new Date(k.trustedUntil) : undefined };
  }
}

/** A new ed25519 CA key with id `<UTC time>-<8 hex>`. */
function newKey(type: CaType, now: Date): { stored: StoredCaKey; publicKey: PublicKey } {
  const id = `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(4).toString('hex')}`;
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  return { stored: { id, created: now.toISOString(), privateKeyPem: encodeOpenSSHPrivateKey(privateKey, `jumpgate ${type} CA ${id}`) }, publicKey };
}

/** Drops keys whose grace period has ended, as of `now`. */
function withTrustNow(set: CaSet, now: Date): CaSet {
  const trusted = set.trusted.filter((k) => k === set.active || (k.trustedUntil !== undefined && k.trustedUntil > now));
  return trusted.length === set.trusted.length ? set : { ...set, trusted };
}

function corrupt(type: CaType, where: string, reason: string, cause?: unknown): UserError {
  return new UserError('CA_CORRUPT', `the ${type} CA in ${where} cannot be used: ${reason}`, {
    cause,
    hint: 'restore it from a backup. Jumpgate will not create a new CA in its place, because every node and client trusts the existing one',
  });
}

/** A CaStore over `store`'s CAs, opened (both CAs read or created). */
export async function openCaStore(store: { ca: CaBackend; location: string }, clock: () => Date, warn: Warn = () => {}): Promise<CaStore> {
  const ca = new CaStore(store.ca, clock, warn, store.location);
  await ca.open();
  return ca;
}
