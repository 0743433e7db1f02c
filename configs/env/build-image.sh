#!/usr/bin/env bash
# Build the tool-use environment image from Debian packages, never pulling:
# a root folder holding busybox-static (every applet linked in /bin), a
# passwd naming the unprivileged user 65534, and the tool scripts the
# tool-use workflow ships (plugins/tool-use/env/, copied to /opt/tools),
# then `docker import` of it as one layer.
#
#   configs/env/build-image.sh [--tag TAG] [--rootfs DIR] [--no-import]
#
#   --tag TAG     image name (default matrixd/tooluse:latest)
#   --rootfs DIR  keep the root folder at DIR (the bwrap driver can use it as
#                 its `rootfs`); default: a temporary folder, removed after
#   --no-import   only make the root folder (needs --rootfs)
#
# The docker engine is the one DOCKER_HOST names (default: the system's).
# busybox comes from the installed busybox-static package, or, when it is not
# installed, from `apt-get download busybox-static`.
set -euo pipefail

tag="matrixd/tooluse:latest"
rootfs=""
import=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --rootfs) rootfs="$2"; shift 2 ;;
    --no-import) import=0; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ "$import" = 0 ] && [ -z "$rootfs" ]; then
  echo "build-image.sh: --no-import needs --rootfs DIR" >&2; exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/matrixd-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The static busybox: from the installed package, else from the package file.
busybox=""
if dpkg -L busybox-static >/dev/null 2>&1; then
  for f in $(dpkg -L busybox-static); do
    case "$f" in */bin/busybox) [ -f "$f" ] && busybox="$f" ;; esac
  done
fi
if [ -z "$busybox" ]; then
  (cd "$work" && apt-get download busybox-static >/dev/null)
  dpkg -x "$work"/busybox-static_*.deb "$work/pkg"
  busybox="$work/pkg/bin/busybox"
fi
if ! "$busybox" true; then
  echo "build-image.sh: $busybox does not run" >&2; exit 1
fi

root="${rootfs:-$work/rootfs}"
rm -rf "$root"
mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,work,opt/tools,usr}
chmod 1777 "$root/tmp"
chmod 0777 "$root/work"
install -m 0755 "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
ln -s ../bin "$root/usr/bin"
ln -s bin "$root/sbin"
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/work:/bin/sh
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "matrixd-env" > "$root/etc/hostname"
# busybox init idles as PID 1 and reaps orphans; it has nothing to start.
echo "# matrixd environment: no services" > "$root/etc/inittab"
: > "$root/etc/resolv.conf"

tools="$repo/plugins/tool-use/env"
if [ -d "$tools" ]; then
  cp -R "$tools/." "$root/opt/tools/"
  find "$root/opt/tools" -type f \( -name '*.sh' -o -perm -u+x \) -exec chmod 0755 {} +
  echo "build-image.sh: tool scripts copied from plugins/tool-use/env" >&2
fi

if [ "$import" = 1 ]; then
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
      --change 'ENV PATH=/opt/tools:/bin' \
      --change 'WORKDIR /work' \
      --change 'USER 65534:65534' \
      --change 'CMD ["/bin/init"]' \
      --message "matrixd tool-use environment (busybox-static)" \
      - "$tag" >/dev/null
  echo "build-image.sh: built $tag" >&2
fi
if [ -n "$rootfs" ]; then echo "build-image.sh: root folder at $root" >&2; fi
