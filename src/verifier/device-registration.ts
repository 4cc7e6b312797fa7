/**
 * Step (5) of a decision: the device of a name, or one registered automatically when the trusted
 * certificate allows it (exactly one even when many connect at once).
 */
import type { TraceStep } from '../pki/path-validation.js';
import { denied, note, type Result } from './decision-steps.js';
import type { TrustCache, TrustedEntry } from './trust-cache.js';
import type { DeviceRef, ProfileRef, VerifierRepository } from './verifier-repository.js';

export interface RegistrationDeps {
  cache: Pick<TrustCache, 'apply' | 'tenantStatus'>;
  repository: Pick<VerifierRepository, 'registerDevice' | 'registrationQuotaReached'>;
}

export interface RegistrationOptions {
  /** Only say whether the device would be registered. */
  dryRun?: boolean;
  trace?: TraceStep[];
}

export function createDeviceRegistration({ cache, repository }: RegistrationDeps) {
  const registrations = new Map<string, ReturnType<VerifierRepository['registerDevice']>>();

  /** `known` is the device of that name as the caches hold it; `profile` the one a new device gets. */
  async function deviceFor(
    tenantId: string,
    name: string,
    known: DeviceRef | null,
    profile: ProfileRef,
    anchor: Pick<TrustedEntry, 'autoRegistrationEnabled'>,
    now: Date,
    opts: RegistrationOptions,
  ): Promise<Result<{ device?: DeviceRef; wouldRegister: boolean }>> {
    const { trace } = opts;
    if (known) return { ok: true, device: known, wouldRegister: false };
    if (!anchor.autoRegistrationEnabled) {
      note(trace, 'device', false, `device ${name} does not exist and auto-registration is off`);
      return denied('DEVICE_NOT_FOUND', `device ${name} is not registered`, tenantId);
    }
    const quotaUsed = () => {
      note(trace, 'device', false, `profile quota of ${profile.maxNewDevicesPerHour} new devices per hour reached`);
      return denied('REGISTRATION_QUOTA_EXCEEDED', 'the hourly auto-registration quota is used up', tenantId);
    };
    if (opts.dryRun) {
      if (await repository.registrationQuotaReached(tenantId, profile, now)) return quotaUsed();
      note(trace, 'device', true, `device ${name} would be registered automatically`);
      return { ok: true, wouldRegister: true };
    }
    // One registration per device name in this process; the database lock covers other processes.
    const key = `${tenantId}\u0000${name}`;
    let pending = registrations.get(key);
    if (!pending) {
      pending = repository.registerDevice(tenantId, name, profile, now);
      registrations.set(key, pending);
      void pending.finally(() => registrations.delete(key)).catch(() => {});
    }
    const result = await pending;
    if (result === 'GONE') {
      // The tenant or the profile was deleted by another process whose notification has not
      // arrived: what this process knows of the tenant is dropped, and the connection refused
      // on what the store holds now (the device's next attempt is decided afresh).
      cache.apply({ type: 'invalidate', tenantId, what: 'tenant' });
      if ((await cache.tenantStatus(tenantId)) === null) return denied('NO_TRUSTED_ANCHOR', 'the trusted certificate of this chain was deleted with its tenant');
      note(trace, 'device', false, `device ${name} cannot be registered: its device profile was deleted`);
      return denied('DEVICE_NOT_FOUND', `device ${name} is not registered: its device profile was deleted`, tenantId);
    }
    if (result === 'QUOTA_EXCEEDED') return quotaUsed();
    // Not put in the cache: a change to the device committed since it was read could reach this
    // process before it is put there, and be undone. The device's next connection looks it up.
    const { device, created } = result;
    // Announced by the registration's own transaction (verifier-repository.ts).
    if (created) note(trace, 'device', true, `device ${name} registered automatically`);
    return { ok: true, device, wouldRegister: false };
  }

  return { deviceFor };
}
