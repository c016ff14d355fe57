// Small progressive enhancements; every page works without this file
// (buttons that need it are rendered `hidden` and shown from here).
(function () {
  "use strict";

  function setNav(toggle, open) {
    toggle.setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("nav-open", open);
  }

  function copy(button) {
    var text = button.getAttribute("data-copy");
    var target = button.getAttribute("data-copy-target");
    if (target) {
      var node = document.querySelector(target);
      text = node ? node.innerText.trim() : "";
    }
    if (!text || !navigator.clipboard) return;
    var label = button.textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-nav-toggle]");
    if (toggle) {
      setNav(toggle, toggle.getAttribute("aria-expanded") !== "true");
      return;
    }
    var copyButton = event.target.closest("[data-copy], [data-copy-target]");
    if (copyButton) {
      copy(copyButton);
      return;
    }
    if (event.target.closest("[data-print]")) {
      window.print();
    }
  });

  // Escape closes the phone menu and puts focus back on its button.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !document.body.classList.contains("nav-open")) return;
    var toggle = document.querySelector("[data-nav-toggle]");
    if (toggle) {
      setNav(toggle, false);
      toggle.focus();
    }
  });

  function ready() {
    if (navigator.clipboard && window.isSecureContext) {
      document.querySelectorAll("[data-copy], [data-copy-target]").forEach(function (b) {
        b.hidden = false;
      });
    }
    document.querySelectorAll("[data-print]").forEach(function (b) { b.hidden = false; });
    // After a refused form, start where the first mistake is (unless the
    // page already put the cursor somewhere).
    var invalid = document.querySelector("main [aria-invalid=true]");
    if (invalid && (document.activeElement === document.body || !document.activeElement)) {
      invalid.focus();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
