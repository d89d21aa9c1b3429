/** The server configuration and the small parsers it shares with the CLI (durations, addresses). */
export * from './server-config.js';
export * from '../shared/duration.js';
export * from '../shared/address.js';
export * from './login-template.js';
export { SAMPLE_CONFIG } from './sample.js';
