#!/usr/bin/env bash
# firmware/qemu-mps2 by hand. Needs qemu-system-arm (apt-get install qemu-system-arm) and the
# thumbv7em-none-eabihf target (rustup target add thumbv7em-none-eabihf).
#
#   ./run.sh         the end-to-end test: build the image, boot it with the simulated PMS5003,
#                    decode the records and check the means (tests/firmware_qemu.rs), verbose
#   ./run.sh boot    build and boot only; the sensor UART (UART1) is a TCP server on
#                    127.0.0.1:${PMS_PORT:-5003} and QEMU waits until a sensor connects to it
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

case "${1:-test}" in
  test)
    cd "$repo"
    exec cargo test -p taza-e2e --test firmware_qemu -- --nocapture
    ;;
  boot)
    cd "$here"
    target_dir="${CARGO_TARGET_DIR:-$here/target}"
    CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --target thumbv7em-none-eabihf
    elf="$target_dir/thumbv7em-none-eabihf/release/taza-firmware-qemu"
    port="${PMS_PORT:-5003}"
    echo "QEMU waits for a PMS5003 on 127.0.0.1:$port (UART1); the console (UART0) is this terminal." >&2
    exec qemu-system-arm -machine mps2-an386 -nographic -monitor none \
      -semihosting-config enable=on,target=native \
      -serial stdio \
      -chardev "socket,id=pms,host=127.0.0.1,port=$port,server=on,wait=on" -serial chardev:pms \
      -kernel "$elf"
    ;;
  *)
    echo "usage: $0 [test|boot]" >&2
    exit 2
    ;;
esac
