/**
 * An annotated server configuration to start from: what `jumpgate configure`
 * can print and the README quickstart can show. A test checks that it parses.
 * Keep it in step with CONFIG_DEFAULTS and the README's configuration section.
 */
export const SAMPLE_CONFIG = `# Jumpgate server configuration (jumpgate start --config FILE; tctl reads it too).
# Relative paths are resolved against the directory of this file, not the
# current directory. Durations: 24h, 90m, 1h30m, 45s, 7d (d = 24 hours).

# The cluster's name, like a DNS name. It appears in certificates and in tsh status.
cluster_name: example.com

# CA keys (0600), state and the audit log. Created if absent. Default: ./data
data_dir: ./data

proxy:
  # HTTPS login API. Listen addresses take an IP address (0.0.0.0 = every interface).
  web_listen_addr: 127.0.0.1:3080
  # What clients use for HTTPS (tsh login --proxy=...). Default: web_listen_addr;
  # required when listening on 0.0.0.0.
  public_addr: localhost:3080
  # SSH proxy: plain OpenSSH reaches nodes through it. Default: 127.0.0.1:3023.
  ssh_listen_addr: 127.0.0.1:3023
  ssh_public_addr: localhost:3023
  # A certificate for public_addr. Without both, a self-signed one is generated
  # once and kept in data_dir.
  # tls_cert_file: /etc/jumpgate/tls/cert.pem
  # tls_key_file: /etc/jumpgate/tls/key.pem
  # Behind a TCP load balancer (HAProxy "mode tcp"): its addresses. Their
  # connections must start with a PROXY protocol header (HAProxy: server ...
  # send-proxy-v2), which names the real client; anyone else's header is
  # refused. Default: none (off).
  # proxy_protocol_from: [10.0.0.5, 10.0.1.0/24]
  # SSH through the web port too (TLS routing, chosen by ALPN): tsh reaches
  # nodes through an HTTP proxy that allows CONNECT to this port only.
  # ssh_listen_addr stays for ssh -J. Default: true.
  # tls_routing: true
  # What one signed-in user may make the SSH proxy and the nodes hold (defaults
  # shown). A node connection counts as "still authenticating" from the dial
  # until it closes or node_login_grace_time passes (the proxy cannot see inside
  # the user's encrypted session): keep max_concurrent_node_dials_per_user below
  # the nodes' sshd MaxStartups (default 10) and node_login_grace_time at their
  # LoginGraceTime (default 2m).
  limits:
    max_connections_per_user: 32
    max_channels_per_connection: 10
    max_sessions_per_user: 64
    max_concurrent_node_dials_per_user: 8
    max_concurrent_node_dials_per_node: 32
    node_login_grace_time: 2m

auth:
  # Default lifetime of user certificates (tsh login --ttl can ask for less). Default: 24h
  cert_ttl: 24h
  # Single sign-on with an OpenID Connect provider (Keycloak, Okta, Google, ...).
  oidc:
    # Must be https (plain http only for an IdP on this machine, for development).
    issuer: https://idp.example.com/realms/main
    client_id: jumpgate
    # The client secret, or a file holding it (keep that file 0600):
    client_secret_file: ./oidc-client-secret
    # Default: [openid, email, profile]; openid is required.
    scopes: [openid, email, profile]
    # The claim that becomes the Jumpgate user name ({{username}}). Default: preferred_username
    username_claim: preferred_username
    # Which roles a user gets. The first rule that matches wins; when none
    # matches, the login is refused. value is text or true/false; a list claim
    # (such as groups) matches when it contains the value.
    claims_to_roles:
      - { claim: groups, value: admins, roles: [admin] }
      - { claim: email_verified, value: true, roles: [user] }

roles:
  user:
    # Unix logins the certificate grants. {{username}} is the user's name;
    # {{external.CLAIM}} is every value of an ID token claim.
    logins: ["{{username}}"]
    # Which nodes: every listed label must match; "*" = any value (label present);
    # a list = any of its values; { "*": "*" } = every node; none = no nodes.
    node_labels: { env: [dev, staging] }
    # Caps the certificate lifetime for this role. Default: auth.cert_ttl
    max_session_ttl: 8h
    # What the certificate permits (defaults shown):
    permit_pty: true
    port_forwarding: true
    forward_agent: false
    x11_forwarding: false
    permit_user_rc: false
  admin:
    logins: ["{{username}}", root]
    node_labels: { "*": "*" }
    max_session_ttl: 24h
    forward_agent: true

# Static inventory of OpenSSH nodes (tsh ls, tctl nodes ls). addr defaults to port 22.
nodes:
  - { name: web1, addr: 10.0.0.11:22, labels: { env: staging, role: web } }
  - { name: db1, addr: 10.0.0.21, labels: { env: prod, role: db } }
`;
