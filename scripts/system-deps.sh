#!/bin/sh
# The system programs Jumpgate's quickstart and tests run, and the Debian/Ubuntu
# packages that install them: the ONE list, used by `.ci/run`, `npm test`
# (pretest, and scripts/run-tests.mjs before any test) and `npm run quickstart`
# (prequickstart).
#
# Usage: sh scripts/system-deps.sh [--install] quickstart|tests
#   without --install: exit 0 when everything is there, else exit 1 naming the
#     missing programs and the exact command that installs them;
#   --install: installs what is missing with apt-get when running as root on a
#     machine with apt-get (system services are not started: a temporary
#     policy-rc.d, unless one exists); otherwise stops with the command to run.
# Programs are looked for on PATH and in the usual sbin/bin directories, as the
# tests' requireTool does (sshd lives in /usr/sbin, often not on a user's PATH).
set -eu

install=no
if [ "${1:-}" = "--install" ]; then install=yes; shift; fi
group="${1:-}"
case "$group" in
  quickstart|tests) ;;
  *) echo "usage: sh scripts/system-deps.sh [--install] quickstart|tests" >&2; exit 2 ;;
esac

# program (a name looked up on PATH, or an absolute path pattern)  package  groups
LIST='
sshd                              openssh-server   quickstart tests
ssh                               openssh-client   quickstart tests
ssh-keygen                        openssh-client   quickstart tests
ssh-agent                         openssh-client   tests
ssh-add                           openssh-client   tests
scp                               openssh-client   tests
openssl                           openssl          tests
squid                             squid            tests
chromium                          chromium         tests
gnome-keyring-daemon              gnome-keyring    tests
secret-tool                       libsecret-tools  tests
dbus-run-session                  dbus             tests
tmux                              tmux             tests
rsync                             rsync            tests
pgrep                             procps           tests
patch                             patch            tests
script                            bsdutils         tests
faketime                          faketime         tests
haproxy                           haproxy          tests
asciinema                         asciinema        tests
/usr/lib/postgresql/*/bin/initdb  postgresql       tests
/usr/lib/wine/wine64              wine64           tests
systemd-analyze                   systemd          tests
'

found() {
  case "$1" in
    /*) for p in $1; do [ -x "$p" ] && return 0; done; return 1 ;;
  esac
  command -v "$1" >/dev/null 2>&1 && return 0
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [ -x "$d/$1" ] && return 0
  done
  return 1
}

missing_programs=''
missing_packages=''
while read -r program package groups; do
  [ -n "$program" ] || continue
  case " $groups " in *" $group "*) ;; *) continue ;; esac
  found "$program" && continue
  missing_programs="$missing_programs $program"
  case " $missing_packages " in *" $package "*) ;; *) missing_packages="$missing_packages $package" ;; esac
done <<EOF
$LIST
EOF

# Node itself: npm ci and every script need it; no package list can fix an old one.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' 2>/dev/null; then
  echo "system-deps: Node.js >= 20.18 is needed (found: $(node --version 2>/dev/null || echo none)); install it from https://nodejs.org or your distribution's nodesource packages" >&2
  exit 1
fi

[ -z "$missing_packages" ] && exit 0

packages="${missing_packages# }"
apt_command="apt-get update && apt-get install -y --no-install-recommends $packages"
if [ "$install" = yes ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing$missing_packages (for$missing_programs)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Install without starting squid, haproxy or a postgresql cluster as system
    # services: the tests run their own on loopback.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -q --no-install-recommends $packages
  # Check again: a package can install without the program (Ubuntu's chromium is a snap stub).
  exec sh "$0" "$group"
fi

{
  if [ "$group" = tests ]; then who='the tests need'; else who='the quickstart needs'; fi
  echo "system-deps: $who programs that are not installed:$missing_programs"
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      echo "install them with:  $apt_command"
    else
      echo "install them with:  sudo sh -c '$apt_command'"
    fi
  else
    echo "this machine has no apt-get; install the equivalents of these Debian packages with its package manager:$missing_packages"
  fi
} >&2
exit 1
