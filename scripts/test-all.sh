#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine, then runs it.
# Needs root (or sudo) for the Debian packages: the tests start their own Dovecot and use real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond openssl curl python3 python3-cryptography fetchmail isync swaks libnet-ssleay-perl gcc libc6-dev iproute2 procmail maildrop mutt chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
npm test
