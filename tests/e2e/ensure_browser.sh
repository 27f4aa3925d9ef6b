#!/bin/sh
# Browser tests drive Debian's Chromium: install it (and a Korean font, so screenshots show Hangul)
# when missing and we may (root with apt-get). Where it cannot be had, the browser tests skip with
# one loud line — never under CI, where they fail instead (tests/e2e/conftest.py).
missing=""
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="chromium"
fc-list 2>/dev/null | grep -qi -e nanum -e "noto sans cjk" || missing="$missing fonts-nanum"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing $missing for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
    || echo "!!! could not install $missing: browser tests may be skipped (or fail under CI) !!!"
fi
exit 0
