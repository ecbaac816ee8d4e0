// Headless Chromium for the page and library tests: Debian's own browser
// (a test tool never downloads one), without a sandbox (tests run as root in
// a container), GPU or background traffic (no network beyond loopback).
import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}
