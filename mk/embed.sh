#!/bin/sh
# embed.sh NAME FILE - print FILE as a C string constant `const char NAME[]` (the standard
# library is compiled into kiln this way).
printf '/* generated from %s by mk/embed.sh */\nconst char %s[] =\n' "$2" "$1"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$2"
printf '    ;\n'
