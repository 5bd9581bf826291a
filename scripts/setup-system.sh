#!/usr/bin/env bash
# Installs the Debian packages the local stack needs.
# As root on Debian it installs them; anywhere else it prints what to install and stops (for the
# optional ones, those only Triton's pytorch backend needs, it prints a note and goes on).
set -euo pipefail

# etcd-server: the local control plane's store.
# golang-1.19-go + reflect2: build kube-apiserver/kube-controller-manager from Debian's source.
# dpkg-dev: `apt-get source`. openssl: the control plane's TLS certificates.
# chromium: the browser test drives the system Chromium (browser downloads are blocked);
# fonts-noto-cjk: the notebooks quote the guide's Korean headings.
# nginx-light: the local ingress gateway (the stack's controller runs its own nginx with a config in
# the state folder, routing by Host as Istio's ingress gateway does). Debian's package also installs
# a system service that serves a default site on 0.0.0.0:80 and starts at install (systemd or
# sysvinit); that would take the port the gateway wants, so a fresh install stops and disables it.
# cmake g++ rapidjson-dev: build Triton's own pytorch backend (scripts/build-triton-pytorch.sh); it is
# optional, so when they cannot be installed a note says so and TorchScript uses the Python-based backend.
# patch: the same for Triton's own tensorflow backend (scripts/build-triton-tensorflow.sh applies the
# project's patch); without it GraphDef uses the Python-based backend.
packages=(etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev openssl chromium fonts-noto-cjk
          nginx-light)
# python3.11-venv, libpython3.11: where Debian has python3.11, .venv is made from it (the Makefile's PYTHON);
# `venv` needs ensurepip from the first, and Triton's Python-backend stub links the second.
[ -x /usr/bin/python3.11 ] && packages+=(python3.11-venv libpython3.11)
optional=(cmake g++ rapidjson-dev patch)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_optional=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && { echo "setup-system: all Debian packages present"; exit 0; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  if [ ${#missing_optional[@]} -gt 0 ]; then
    echo "setup-system: optional packages missing: ${missing_optional[*]} (Triton's pytorch backend is not built without them;" >&2
    echo "  TorchScript then uses the Python-based backend). As root: apt-get install ${missing_optional[*]}" >&2
  fi
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "setup-system: missing packages: ${missing[*]}" >&2
  echo "  install them as root: apt-get install ${missing[*]}" >&2
  echo "  (or point KUBE_APISERVER, KUBE_CONTROLLER_MANAGER and ETCD at existing binaries, see README)" >&2
  exit 1
fi

echo "setup-system: installing ${missing[*]} ${missing_optional[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ ${#missing_optional[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing_optional[@]}" >/dev/null \
  || echo "setup-system: could not install ${missing_optional[*]}: TorchScript will use the Python-based backend" >&2
if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
  echo "setup-system: stopping and disabling the nginx system service the package started (the stack runs its own)"
  if [ -d /run/systemd/system ]; then
    systemctl disable --now nginx.service >/dev/null 2>&1 || true
  else
    invoke-rc.d nginx stop >/dev/null 2>&1 || true
    update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
fi
echo "setup-system: done"
