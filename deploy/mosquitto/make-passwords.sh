#!/bin/sh
# Builds Mosquitto's password file for Taza: one account per post (user name = post id) plus the
# gateway's account, each with a random password.
#
#   deploy/mosquitto/make-passwords.sh posts.txt deploy/mosquitto/passwd > credentials.csv
#
# posts.txt: one post id per line (blank lines and # comments ignored), e.g. the ids of the
# [[posts]] entries in taza.toml. The password file gets only salted hashes; the clear-text
# passwords go to stdout as CSV (user,password) exactly once: hand each post's line to the
# technician who provisions it, put the gateway's into deploy/.env (MQTT_GATEWAY_PASSWORD), and
# keep the CSV out of git. Run it again to rotate everything (it rewrites the file).
# To add or rotate one post later:  mosquitto_passwd -b deploy/mosquitto/passwd <post-id> <password>
# then reload the broker (docker compose -f deploy/compose.yaml kill -s HUP mosquitto).
#
# Future work: a `gateway` command that generates this file straight from the post registry.
#
# Needs mosquitto_passwd (Debian: apt-get install mosquitto) and openssl. Without a local
# mosquitto_passwd, set MOSQUITTO_PASSWD="docker run --rm -i -v $PWD:/w -w /w eclipse-mosquitto:2 mosquitto_passwd".
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 POSTS_FILE PASSWORD_FILE" >&2
    exit 2
fi
posts=$1
out=$2
passwd_cmd=${MOSQUITTO_PASSWD:-mosquitto_passwd}
gateway_user=${GATEWAY_USER:-gateway}

random_password() {
    # 24 random bytes, base64 without characters that need quoting in URLs or shells.
    openssl rand -base64 24 | tr -d '\n/+='
}

umask 077
tmp=$(mktemp "${out}.XXXXXX")
trap 'rm -f "$tmp"' EXIT
: > "$tmp"

echo "user,password"
add() {
    pw=$(random_password)
    $passwd_cmd -b "$tmp" "$1" "$pw"
    echo "$1,$pw"
}

add "$gateway_user"
# Post ids are short ASCII slugs; refuse anything else (a user name with / or + or # would
# break the ACL patterns).
grep -v '^[[:space:]]*\(#\|$\)' "$posts" | while IFS= read -r id; do
    id=$(printf '%s' "$id" | tr -d '[:space:]')
    case "$id" in
        *[!a-zA-Z0-9_-]*)
            echo "refusing post id '$id': only letters, digits, - and _" >&2
            exit 1
            ;;
    esac
    if [ "$id" = "$gateway_user" ]; then
        echo "a post cannot be called '$gateway_user'" >&2
        exit 1
    fi
    add "$id"
done

mv "$tmp" "$out"
trap - EXIT
# Mosquitto in the container runs as uid 1883 and must read the file (salted PBKDF2 hashes;
# chown 1883 and chmod 0640 instead if other people share the host).
chmod 0644 "$out"
echo "wrote $out" >&2
