#!/bin/sh
# Prints the board image's flash and RAM use, summed from the ELF section table (readelf from
# any binutils; no cargo-binutils needed). Flash = allocated PROGBITS sections (the .data
# initialisers are stored in flash too); RAM = allocated sections in SRAM (0x2000_0000..),
# i.e. .data + .bss + .uninit, which includes embassy's statically allocated task futures.
# The stack takes the rest of RAM. Limits are the memory.x application slot and the SRAM.
#
# Usage: firmware/board-f412/size.sh [ELF]   (default: the release image in $CARGO_TARGET_DIR)
set -eu
elf=${1:-${CARGO_TARGET_DIR:-$(dirname "$0")/target}/thumbv7em-none-eabihf/release/taza-firmware-f412}
[ -f "$elf" ] || { echo "size.sh: no image at $elf (build it first)" >&2; exit 1; }
flash_limit=$((256 * 1024))
ram_limit=$((256 * 1024))
readelf -S --wide "$elf" | sed -n 's/^ *\[ *[0-9]*\] //p' | awk \
  -v flash_limit="$flash_limit" -v ram_limit="$ram_limit" -v elf="$elf" '
  # POSIX awk has no strtonum (mawk, busybox): hex by hand.
  function hex(s,    i, n) {
    n = 0
    for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
    return n
  }
  # name type addr off size es flags ...
  $7 ~ /A/ {
    size = hex($5); addr = hex($3)
    in_ram = (addr >= 536870912 && addr < 537133056) # 0x2000_0000..0x2004_0000
    if ($2 == "PROGBITS") flash += size
    if (in_ram) ram += size
  }
  END {
    printf "%s\n", elf
    printf "flash: %7d bytes (%5.1f KiB) of %d KiB application slot (%4.1f %%)\n", flash, flash / 1024, flash_limit / 1024, 100 * flash / flash_limit
    printf "ram:   %7d bytes (%5.1f KiB) of %d KiB SRAM, static (%4.1f %%); the stack gets the rest\n", ram, ram / 1024, ram_limit / 1024, 100 * ram / ram_limit
    if (flash > flash_limit || ram > ram_limit) exit 1
  }'
