import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeHtml, htmlPage } from '../../src/util/html.js';

test('text from an IdP or a request cannot inject markup into a login page', () => {
  assert.equal(escapeHtml(`<script>alert("x")</script> & 'y'`), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;');
  const page = htmlPage('Login <failed>', 'IdP said: <img src=x onerror=alert(1)>');
  assert.doesNotMatch(page, /<img|<failed>/);
  assert.match(page, /<h1>Login &lt;failed&gt;<\/h1>/);
});
