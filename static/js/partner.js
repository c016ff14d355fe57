// The partner dashboard: small enhancements beside app.js (which copies
// [data-copy-target] on click). Every page works without this file.
(function () {
  "use strict";

  // Copy buttons are rendered hidden; app.js shows those of the first page
  // load, this shows the ones htmx swaps in later.
  function showCopyButtons(root) {
    if (!(navigator.clipboard && window.isSecureContext)) return;
    root.querySelectorAll("[data-copy], [data-copy-target]").forEach(function (button) {
      button.hidden = false;
    });
  }

  // The custom path of a link's landing page matters only for "another page".
  function syncLanding(select) {
    var custom = document.querySelector(select.getAttribute("data-landing-custom"));
    if (!custom) return;
    var hide = select.value !== "custom" && !custom.querySelector(".has-error");
    custom.hidden = hide;
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select.matches("[data-landing-custom]")) return;
    syncLanding(select);
    var custom = document.querySelector(select.getAttribute("data-landing-custom"));
    var input = custom && !custom.hidden ? custom.querySelector("input") : null;
    if (input && select.value === "custom") input.focus();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    showCopyButtons(event.target.parentNode || document);
  });

  // A snippet gets fully selected on focus, for copying by hand.
  document.addEventListener("focusin", function (event) {
    var pre = event.target.closest && event.target.closest("pre.snippet");
    if (!pre) return;
    var range = document.createRange();
    range.selectNodeContents(pre);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  });

  function ready() {
    document.querySelectorAll("[data-landing-custom]").forEach(syncLanding);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
