#!/usr/bin/env bash
# Fetches the web app's two libraries from the npm registry at pinned versions, checks them
# against the sha256 sums below, copies their browser builds into static/vendor/ and writes
# VENDOR.md. Run by `make vendor-js`; the copies are committed, so neither CI nor `go build`
# needs npm. To move to another version: change it here, run with UPDATE=1, review, commit.
set -euo pipefail
cd "$(dirname "$0")"
MARKED=18.2.1
DOMPURIFY=3.4.18
# name|version|file in the package|vendored as|licence|sha256 of the file
LIBS=(
  "marked|$MARKED|package/lib/marked.esm.js|marked.esm.js|MIT|5371fea86fd0656b4fc7bea7c94c663109d82789b69433eeee78d42895aa44de"
  "dompurify|$DOMPURIFY|package/dist/purify.min.js|purify.min.js|MPL-2.0 OR Apache-2.0|8053ee2a6a09f9d50f7fcd6fb7f07072f52c7f3fa9aa12147cab4feaf65ee970"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=static/vendor
{
  echo "# Vendored browser libraries"
  echo
  echo "Written by \`make vendor-js\` (internal/webapp/vendor-js.sh) from the npm registry; do not edit."
  echo "The app loads them from its own origin: no CDN at run time."
  echo
  echo "| package | version | file | licence | sha256 |"
  echo "| --- | --- | --- | --- | --- |"
} >"$tmp/VENDOR.md"
for lib in "${LIBS[@]}"; do
  IFS='|' read -r name ver src dst lic sum <<<"$lib"
  mkdir -p "$tmp/$name"
  (cd "$tmp/$name" && npm pack --silent "$name@$ver" >/dev/null)
  tar -xzf "$tmp/$name/$name-$ver.tgz" -C "$tmp/$name" "$src" package/LICENSE
  got=$(sha256sum "$tmp/$name/$src" | cut -d' ' -f1)
  if [ "$got" != "$sum" ] && [ "${UPDATE:-}" != 1 ]; then
    echo "vendor-js: $name@$ver $src has sha256 $got, want $sum (a changed package: review it, then UPDATE=1)" >&2
    exit 1
  fi
  cp "$tmp/$name/$src" "$out/$dst"
  cp "$tmp/$name/package/LICENSE" "$out/$name.LICENSE"
  echo "| $name | $ver | $dst | $lic | \`$got\` |" >>"$tmp/VENDOR.md"
done
cp "$tmp/VENDOR.md" "$out/VENDOR.md"
# The committed copies must be what was just checked.
for lib in "${LIBS[@]}"; do
  IFS='|' read -r name ver src dst lic sum <<<"$lib"
  [ "${UPDATE:-}" = 1 ] || echo "$sum  $out/$dst" | sha256sum -c --quiet -
done
echo "vendor-js: $(ls "$out" | tr '\n' ' ')"
