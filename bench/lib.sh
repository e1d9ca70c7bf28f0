# Shared by the benchmark scripts: install peers, build Meridian, clean up on exit.

# install_missing CMD:PACKAGE... installs each Debian package whose command is missing.
install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=(${pair#*:})
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Builds the release binary and sets BIN, WORK (a scratch dir) and an exit trap that
# stops every pid added to `pids` and removes WORK.
prepare() {
  cargo build --release -q
  BIN=$PWD/target/release/meridian
  WORK=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
}
