#!/usr/bin/env bash
# Proves the README's two commands from nothing: builds a minimal Debian 12 root with debootstrap
# (cached in .cache/fresh-debian/pristine, which git ignores), copies it, clones this checkout's
# HEAD into the copy, and runs `tools/dev.sh train --epochs 1` and `tools/dev.sh test` inside
# with chroot. No CUDA toolkit exists there, so this checks the CPU path on a fresh machine.
#   tools/check-fresh-debian.sh            uses (or makes) the cached pristine root
#   FRESH_REBUILD=1 tools/check-fresh-debian.sh   makes the pristine root anew first
# Needs root (debootstrap, mount, chroot) and Debian's package archive.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${FRESH_CACHE:-$repo/.cache/fresh-debian}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

if [ "$(id -u)" -ne 0 ]; then
  echo "check-fresh-debian: needs root (debootstrap, mount and chroot)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "check-fresh-debian: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap \
    >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi
mkdir -p "$cache"

# The pristine root: made once, never changed afterwards (each run works on a copy).
pristine=$cache/pristine
if [ -n "${FRESH_REBUILD:-}" ] || [ ! -f "$pristine/.descent-pristine" ]; then
  echo "== debootstrap --variant=minbase $suite (cached in $pristine)"
  rm -rf "$pristine" "$pristine.tmp"
  start=$SECONDS
  if ! debootstrap --variant=minbase "$suite" "$pristine.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -20 "$cache/debootstrap.log" >&2
    echo "check-fresh-debian: debootstrap failed (full log: $cache/debootstrap.log)" >&2
    exit 1
  fi
  touch "$pristine.tmp/.descent-pristine"
  mv "$pristine.tmp" "$pristine"
  echo "   made in $((SECONDS - start)) s"
fi

work=$(mktemp -d "$cache/run.XXXXXX")
root=$work/root
cleanup() {
  for m in "$root/var/cache/apt/archives" "$root/proc"; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m" || true; fi
  done
  # Never delete through a mount that is still there.
  if ! grep -q " $work" /proc/mounts; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== copy of the pristine root"
cp -a "$pristine" "$root"
rm -f "$root/.descent-pristine"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
commit=$(git -C "$repo" rev-parse --short HEAD)
git clone --quiet --no-hardlinks "$repo" "$root/root/descent"
echo "   descent at commit $commit (this checkout's HEAD; uncommitted changes are not in it)"
mount -t proc proc "$root/proc"
# Downloaded .deb files are kept between runs (they are only a download cache; every package is
# still installed from nothing into the fresh copy).
mkdir -p "$cache/apt-archives/partial" "$root/var/cache/apt/archives"
mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"

# A clean environment, as a new user's login shell would have it: no CUDA, no variables of ours.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/descent && $1"
}
echo "== in the fresh root: tools/dev.sh train --epochs 1"
start=$SECONDS
in_root "tools/dev.sh train --epochs 1 --no-progress"
train_s=$((SECONDS - start))
echo "== in the fresh root: tools/dev.sh test"
start=$SECONDS
in_root "tools/dev.sh test"
test_s=$((SECONDS - start))
echo "== fresh Debian 12: both README commands passed (train, with setup and build: ${train_s} s;" \
  "test: ${test_s} s)"
