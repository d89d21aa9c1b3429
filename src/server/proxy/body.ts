/**
 * Request bodies of the proxy's HTTPS endpoints (the JSON API, the headless
 * approval forms): one reader with one size rule.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiRequestError } from '../auth/login.js';

/**
 * Reads a body of content type `type` and at most `maxBytes`; anything else
 * is an ApiRequestError (415, 413 BODY_TOO_LARGE, 400 REQUEST_ABORTED) whose
 * message names `noun` ("body", "form"). An oversized body is refused from
 * its Content-Length before a byte of it is read, or as soon as it passes the
 * limit: it is never buffered, and the connection is closed after the answer
 * instead of draining the rest.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, opts: { type: string; maxBytes: number; noun: string; limitText: string }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const refuse = (err: ApiRequestError) => {
      res.setHeader('connection', 'close');
      req.pause();
      reject(err);
    };
    const tooLarge = () => new ApiRequestError(413, 'BODY_TOO_LARGE', `${opts.limitText} are limited to ${opts.maxBytes} bytes`);
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== opts.type) return refuse(new ApiRequestError(415, 'BAD_CONTENT_TYPE', `send the ${opts.noun} as ${opts.type}`));
    if (Number(req.headers['content-length'] ?? '0') > opts.maxBytes) return refuse(tooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > opts.maxBytes) {
        req.off('data', onData);
        chunks.length = 0;
        return refuse(tooLarge());
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      if (size <= opts.maxBytes) resolve(Buffer.concat(chunks));
    });
    // The client went away (or was cut off at requestTimeout) mid-body.
    req.on('error', () => reject(new ApiRequestError(400, 'REQUEST_ABORTED', `the ${opts.noun === 'body' ? 'request body' : opts.noun} did not arrive`)));
  });
}
