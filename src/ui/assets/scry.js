// ScryDB web UI: conveniences over pages that work without this script.
// Part of ScryDB, Apache-2.0. No third-party code.
(function () {
  "use strict";

  // Critical path toggle without a reload; the link (?cp=1) still works without script.
  function setupCriticalPath() {
    var toggle = document.getElementById("cp-toggle");
    var fall = document.getElementById("waterfall");
    if (!toggle || !fall) return;
    function show(on) {
      fall.classList.toggle("cp-on", on);
      toggle.classList.toggle("on", on);
      toggle.setAttribute("aria-checked", on ? "true" : "false");
      var state = toggle.querySelector(".state");
      if (state) state.textContent = on ? "on" : "off";
      var url = new URL(window.location.href);
      if (on) url.searchParams.set("cp", "1"); else url.searchParams.delete("cp");
      window.history.replaceState(null, "", url.toString());
      // Links to other spans keep the choice.
      document.querySelectorAll(".wf-name, .detail a").forEach(function (a) {
        var u = new URL(a.href, window.location.href);
        if (u.pathname !== window.location.pathname) return;
        if (on) u.searchParams.set("cp", "1"); else u.searchParams.delete("cp");
        a.href = u.pathname + u.search + u.hash;
      });
      var off = new URL(toggle.href, window.location.href);
      if (on) off.searchParams.delete("cp"); else off.searchParams.set("cp", "1");
      toggle.href = off.pathname + off.search;
    }
    toggle.addEventListener("click", function (e) {
      e.preventDefault();
      show(!fall.classList.contains("cp-on"));
    });
  }

  // A click on the minimap scrolls the waterfall to that row.
  function setupMinimap() {
    var map = document.querySelector(".minimap");
    if (!map) return;
    map.addEventListener("click", function (e) {
      var box = map.getBoundingClientRect();
      var rows = document.querySelectorAll("#waterfall .wf-row");
      if (!rows.length) return;
      var k = Math.min(rows.length - 1, Math.max(0, Math.floor((e.clientY - box.top) / box.height * rows.length)));
      rows[k].scrollIntoView({ block: "center" });
    });
  }

  // "/" focuses the search box, as in most consoles.
  function setupKeys() {
    document.addEventListener("keydown", function (e) {
      if (e.key !== "/" || e.target.closest("input, textarea, select")) return;
      var q = document.querySelector("input.q, #sql-input");
      if (q) { e.preventDefault(); q.focus(); }
    });
  }

  // Ctrl/Cmd+Enter runs the SQL console's statement.
  function setupSql() {
    var box = document.getElementById("sql-input");
    if (!box) return;
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); box.form.submit(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCriticalPath();
    setupMinimap();
    setupKeys();
    setupSql();
  });
})();
