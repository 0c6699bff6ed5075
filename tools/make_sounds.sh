#!/usr/bin/env bash
# Generate callsec's voice prompts with espeak-ng + sox, and install them into an Asterisk.
#
#   tools/make_sounds.sh                 generate what is missing or whose text changed
#   tools/make_sounds.sh --force         regenerate everything
#   tools/make_sounds.sh --check         exit 1 if a prompt named in the texts has no WAV
#   tools/make_sounds.sh --install DIR   copy the prompts into an Asterisk sounds dir
#                                        (e.g. /usr/share/asterisk/sounds)
#   tools/make_sounds.sh --install DIR --root ROOT
#                                        the same for an Asterisk in a chroot at ROOT (DIR is
#                                        the path inside it; its symlinks resolve inside it)
#
# Sources: sounds/texts/<lang>.txt, one "name|text" per line ("#" starts a comment).
# Output:  sounds/<lang>/callsec/<name>.wav, 8 kHz mono 16-bit signed PCM, and the German
#          digits sounds/de/digits/0..9.wav (Asterisk's core sounds ship English digits only).
# Idempotent: sounds/<lang>/.manifest records a hash of renderer, voice, speed and text; a file
# is regenerated only when it is missing or its hash changed. sox runs without dither (-D), so
# regenerating yields the same bytes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOUNDS="$ROOT/sounds"
LANGS=(en de)
SPEED=150
# Bump when render() changes, so every file is regenerated once.
RENDER_VERSION=2
GERMAN_DIGITS=(null eins zwei drei vier fünf sechs sieben acht neun)

voice_for() {
    case "$1" in
        en) echo en-us ;;
        de) echo de ;;
        *) echo "make_sounds: no voice for language $1" >&2; return 1 ;;
    esac
}

# prompts LANG -> "name|text" lines without comments or blanks
prompts() {
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$SOUNDS/texts/$1.txt"
}

# render VOICE TEXT OUT: speech to an 8 kHz mono 16-bit WAV, written atomically
render() {
    local voice=$1 text=$2 out=$3 tmp
    tmp=$(mktemp -d)
    printf '%s' "$text" | espeak-ng -v "$voice" -s "$SPEED" --stdin -w "$tmp/raw.wav"
    # trim the silence espeak-ng adds (digits are spoken in a row), keep a short pad
    sox -D "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$tmp/out.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.05 0.15 norm -3
    mkdir -p "$(dirname "$out")"
    mv -f "$tmp/out.wav" "$out"
    rm -rf "$tmp"
}

# generate_one LANG KEY VOICE TEXT OUT: (re)render when the manifest disagrees
generate_one() {
    local lang=$1 key=$2 voice=$3 text=$4 out=$5 hash manifest
    manifest="$SOUNDS/$lang/.manifest"
    hash=$(printf '%s|%s|%s|%s' "$RENDER_VERSION" "$voice" "$SPEED" "$text" | sha256sum | cut -c1-16)
    if [[ $FORCE -eq 0 && -f $out ]] && grep -qxF "$key $hash" "$manifest" 2>/dev/null; then
        return 0
    fi
    render "$voice" "$text" "$out"
    echo "generated ${out#"$ROOT"/}"
    touch "$manifest"
    grep -v "^$key " "$manifest" > "$manifest.tmp" || true
    echo "$key $hash" >> "$manifest.tmp"
    sort -o "$manifest" "$manifest.tmp"
    rm -f "$manifest.tmp"
}

generate() {
    local lang voice name text digit
    command -v espeak-ng >/dev/null || { echo "make_sounds: espeak-ng is not installed" >&2; exit 1; }
    command -v sox >/dev/null || { echo "make_sounds: sox is not installed" >&2; exit 1; }
    for lang in "${LANGS[@]}"; do
        voice=$(voice_for "$lang")
        mkdir -p "$SOUNDS/$lang/callsec"
        local -A wanted=()
        while IFS='|' read -r name text; do
            wanted[$name]=1
            generate_one "$lang" "callsec/$name" "$voice" "$text" "$SOUNDS/$lang/callsec/$name.wav"
        done < <(prompts "$lang")
        for file in "$SOUNDS/$lang/callsec/"*.wav; do   # prompts no longer in the texts
            [[ -e $file ]] || continue
            name=$(basename "$file" .wav)
            [[ -n ${wanted[$name]:-} ]] || { rm -f "$file"; echo "removed ${file#"$ROOT"/}"; }
        done
        unset wanted
    done
    for digit in "${!GERMAN_DIGITS[@]}"; do
        generate_one de "digits/$digit" de "${GERMAN_DIGITS[$digit]}" "$SOUNDS/de/digits/$digit.wav"
    done
}

check() {
    local lang name text missing=0
    for lang in "${LANGS[@]}"; do
        while IFS='|' read -r name text; do
            [[ -f $SOUNDS/$lang/callsec/$name.wav ]] || { echo "missing $lang/callsec/$name.wav"; missing=1; }
        done < <(prompts "$lang")
    done
    return $missing
}

# in_root PATH: PATH inside $INSTALL_ROOT (a chroot, or "" for this system) as a host path,
# following symlinks of the last component inside the root (Debian's sounds/en is an absolute
# link through /etc/alternatives, which must not be resolved on the host).
in_root() {
    local path=$1 target i
    for i in 1 2 3 4 5 6 7 8; do
        [[ -L $INSTALL_ROOT$path ]] || break
        target=$(readlink "$INSTALL_ROOT$path")
        [[ $target == /* ]] && path=$target || path=$(dirname "$path")/$target
    done
    echo "$INSTALL_ROOT$path"
}

# install DIR: prompts into DIR/<lang>/callsec; German digits into DIR/de/digits unless that
# Asterisk already has German digits of its own (asterisk-core-sounds-de): those are never
# overwritten; ours carry a .callsec marker and are refreshed.
install_into() {
    local dest=$1 lang target digits
    [[ -d $(in_root "$dest") ]] || { echo "make_sounds: $INSTALL_ROOT$dest is not a directory" >&2; exit 2; }
    for dir in "$SOUNDS"/*/callsec; do   # en, de and any language dropped into sounds/
        lang=$(basename "$(dirname "$dir")")
        compgen -G "$dir/*.wav" >/dev/null || continue
        target=$(in_root "$dest/$lang")
        mkdir -p "$target/callsec"
        cp -f "$dir/"*.wav "$target/callsec/"
        echo "installed $lang prompts into $target/callsec"
    done
    digits="$(in_root "$dest/de")/digits"
    if compgen -G "$digits/0.*" >/dev/null && [[ ! -f $digits/.callsec ]]; then
        echo "kept the German digits already in $digits"
    else
        mkdir -p "$digits"
        cp -f "$SOUNDS/de/digits/"*.wav "$digits/"
        echo "generated by callsec tools/make_sounds.sh" > "$digits/.callsec"
        echo "installed German digits into $digits"
    fi
}

FORCE=0
case "${1:-}" in
    "") generate ;;
    --force) FORCE=1; generate ;;
    --check) check ;;
    --install) [[ -n ${2:-} ]] || { echo "usage: $0 --install SOUNDS_DIR [--root ROOT]" >&2; exit 2; }
               INSTALL_ROOT=""
               if [[ ${3:-} == --root ]]; then INSTALL_ROOT=${4:?--root needs a directory}; fi
               INSTALL_ROOT=${INSTALL_ROOT%/}
               install_into "$2" ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: $0 [--force | --check | --install SOUNDS_DIR [--root ROOT]]" >&2; exit 2 ;;
esac
