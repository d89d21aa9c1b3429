/** The server configuration and the small parsers it shares with the CLI (durations, addresses). */
export * from './server-config.js';
export * from './duration.js';
export * from './address.js';
export * from './login-template.js';
export { SAMPLE_CONFIG } from './sample.js';
