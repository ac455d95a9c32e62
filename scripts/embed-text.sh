#!/bin/sh
# embed-text.sh — writes C source defining `const char NAME[]` (and NAME_len) holding the
# text of FILE, so the daemon serves it without finding a file at run time.
# Usage: scripts/embed-text.sh NAME FILE > out.c
# Backslashes, quotes and '?' (trigraphs: -std=c11 has them) are escaped; one line a row.
set -eu
name=$1
file=$2
printf '/* Generated from %s by scripts/embed-text.sh; do not edit. */\n#include <stddef.h>\n\n' "$file"
printf 'const char %s[] =\n' "$name"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$/\\n"/' "$file"
printf '    "";\nconst size_t %s_len = sizeof %s - 1;\n' "$name" "$name"
