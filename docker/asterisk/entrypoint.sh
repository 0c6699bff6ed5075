#!/bin/sh
# Put the Docker secrets into Asterisk's config, then run Asterisk in the foreground as the
# unprivileged `asterisk` user. Secrets: /run/secrets/ami_secret, /run/secrets/ari_password
# (callsec reads the same files through CALLSEC_AMI__PASSWORD_FILE / CALLSEC_ARI__PASSWORD_FILE).
set -eu

read_secret() {
    [ -s "/run/secrets/$1" ] || { echo "callsec-asterisk: missing Docker secret $1" >&2; exit 1; }
    tr -d '\r\n' <"/run/secrets/$1"
}

AMI_SECRET=$(read_secret ami_secret)
ARI_PASSWORD=$(read_secret ari_password)
export AMI_SECRET ARI_PASSWORD

# ENVIRON: the values are never interpreted (no escapes, no sed delimiters to worry about).
awk '/^secret = / { print "secret = " ENVIRON["AMI_SECRET"]; next } { print }' \
    /etc/asterisk/manager.conf >/etc/asterisk/manager.conf.new
awk '/^password_format = / { print "password_format = plain"; next }
     /^password = / { print "password = " ENVIRON["ARI_PASSWORD"]; next } { print }' \
    /etc/asterisk/ari.conf >/etc/asterisk/ari.conf.new
for f in manager ari; do
    mv "/etc/asterisk/$f.conf.new" "/etc/asterisk/$f.conf"
    chown root:asterisk "/etc/asterisk/$f.conf"
    chmod 0640 "/etc/asterisk/$f.conf"
done
unset AMI_SECRET ARI_PASSWORD

exec asterisk -f -U asterisk -G asterisk -vvv "$@"
