#!/usr/bin/env bash
# Install what the throwaway-host test fixture (tests/hosts/) needs on the runner.
# Idempotent: when every package is already installed it does no network I/O.
set -euo pipefail

# debootstrap builds the cached rootfs; iproute2 makes the netns + veth pair;
# util-linux gives losetup/unshare/mount; openssh-client gives ssh-keygen/ssh;
# e2fsprogs/mdadm let the harness inspect disks from outside; procps gives ps/pkill.
PACKAGES=(
  debootstrap debian-archive-keyring iproute2 util-linux mount openssh-client
  e2fsprogs mdadm procps
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-host-deps: must run as root (throwaway hosts need netns and loop devices)" >&2
  exit 1
fi

source "$(dirname "$0")/lib/apt-missing.sh"
apt_install_missing install-test-host-deps "${PACKAGES[@]}"
