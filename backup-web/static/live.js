// Refreshes the parts of a page marked data-live (tables of runs, the
// overview's tiles) every few seconds, so running runs and new runs show
// without a reload. The page works without it.
(function () {
  "use strict";
  var EVERY = 3000;
  if (!document.querySelector("[data-live]")) return;
  function tick() {
    if (document.hidden) return setTimeout(tick, EVERY);
    fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (part) {
          var next = part.id && fresh.getElementById(part.id);
          if (next && next.innerHTML !== part.innerHTML) part.innerHTML = next.innerHTML;
        });
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, EVERY); });
  }
  setTimeout(tick, EVERY);
})();
