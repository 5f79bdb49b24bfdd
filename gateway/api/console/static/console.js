// The console works without this script; it only adds an optional auto-refresh.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("auto-refresh");
  if (!box) return;
  const stored = "fanout-console-refresh";
  box.checked = window.localStorage.getItem(stored) === "on";
  let timer = null;
  const arm = () => {
    if (timer) window.clearTimeout(timer);
    timer = box.checked ? window.setTimeout(() => window.location.reload(), 10000) : null;
  };
  box.addEventListener("change", () => {
    window.localStorage.setItem(stored, box.checked ? "on" : "off");
    arm();
  });
  arm();
});
