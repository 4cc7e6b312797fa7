/**
 * Why a certificate could not be made. The `certgate certs` command prints `message` on one line
 * and exits with status 2; library callers can switch on `code`.
 */
export type CertsErrorCode =
  | 'INVALID_OPTION'
  | 'FILE_NOT_FOUND'
  | 'FILE_EXISTS'
  | 'CERTIFICATE_UNREADABLE'
  | 'KEY_UNREADABLE'
  | 'KEY_ENCRYPTED'
  | 'KEY_PASSWORD_WRONG'
  | 'KEY_UNSUPPORTED'
  | 'KEY_MISMATCH'
  | 'ISSUER_EXPIRED'
  | 'ISSUER_NOT_YET_VALID'
  | 'ISSUER_NOT_A_CA'
  | 'ISSUER_PATH_LENGTH';

export class CertsError extends Error {
  constructor(
    readonly code: CertsErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CertsError';
  }
}
