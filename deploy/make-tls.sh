#!/usr/bin/env bash
# ./deploy/make-tls.sh DIR [NAME...]: a private CA and a server certificate for HTTPS, with openssl.
#
# Writes DIR/tls-ca.crt (give it to the uploaders: --cacert), DIR/tls.crt and DIR/tls.key (the
# server's LOTTERY_TLS_CERT and LOTTERY_TLS_KEY; compose mounts all three as secrets), and
# DIR/tls-ca.key, the CA's key, which nothing mounts: keep it or delete it.
# NAMEs are the server's host names and IP addresses (default: server localhost 127.0.0.1).
set -euo pipefail

usage="usage: $0 DIR [NAME...]   (default names: server localhost 127.0.0.1)
Writes DIR/tls-ca.crt (the uploaders' --cacert), DIR/tls.crt and DIR/tls.key (the server's
LOTTERY_TLS_CERT and LOTTERY_TLS_KEY) and DIR/tls-ca.key (the CA's key: keep it or delete it)."

case "${1:-}" in
    -h | --help) echo "$usage"; exit 0 ;;
    "") echo "$usage" >&2; exit 2 ;;
    -*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;  # never a folder named like an option
esac
out="$1"
shift
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(server localhost 127.0.0.1)

san=""
for name in "${names[@]}"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san="${san%,}"

mkdir -p "$out"
chmod 700 "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -keyout "$out/tls-ca.key" -out "$out/tls-ca.crt" -subj "/CN=lottery private CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/tls.key" -out "$work/tls.csr" -subj "/CN=${names[0]}" 2>/dev/null
printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$out/tls-ca.crt" -CAkey "$out/tls-ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 825 -extfile "$work/ext" -out "$out/tls.crt" 2>/dev/null

# Compose mounts file secrets with their host mode and the containers run as another user
# (as for the tokens): the mounted files are world-readable inside the private folder.
chmod 600 "$out/tls-ca.key"
chmod 644 "$out/tls.key" "$out/tls.crt" "$out/tls-ca.crt"
echo "wrote $out/tls-ca.crt, $out/tls.crt and $out/tls.key for: ${names[*]}" >&2
