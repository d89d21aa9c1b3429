/** SSH wire format (RFC 4251 §5) shared by sshcert and the agent protocol. */
export { WireError, type WireErrorCode } from './errors.js';
export { WireReader } from './reader.js';
export { WireWriter } from './writer.js';
