/**
 * `certgate api` and `certgate mqtt` (two workers asking the API's verifier over HTTP) apart:
 * device, serial, CA and tenant changes made right after a database restart, or right after every
 * LISTEN connection was terminated, are honoured for the next connect on every worker, and the
 * workers, which follow changes on the database for their live sessions only, close those of the
 * device within 5 seconds.
 */
import { changeSuite } from './changes.js';

changeSuite(['restart', 'listen-terminated'], {
  layout: 'split',
  kinds: ['device-disabled', 'serial-revoked', 'ca-deleted', 'tenant-suspended'],
});
