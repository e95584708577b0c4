// Whether the page's script ran, decided when the page has loaded. The load event comes only after
// app.js (a module, deferred) has run, failed, or been skipped (兼容模式 / IE 模式 ignore module
// scripts but run this classic one), however slowly it arrived: the notice no longer flashes on a
// working page over a slow link, as a fixed delay in the stylesheet made it. Plain ES3 for old IE.
(function () {
  var notice = document.getElementById("script-notice");
  if (!notice || !window.addEventListener) return; // the stylesheet's late fallback shows it
  notice.className = "unsupported"; // the load event decides from now on, not the delay
  notice.hidden = true;
  window.addEventListener("load", function () {
    if (!window.paidanStarted) notice.hidden = false;
  });
})();
