// The document upload page (templates/kyc/document.html): show only the file
// inputs the chosen document needs (front and back of a card, or pages), and
// say at once when a file is too large or there are too many pages. Without
// this file every input shows and the server checks the same.
(function () {
  "use strict";

  function sidesOf(form) {
    var radios = form.querySelectorAll("input[name=document_kind]");
    var checked = form.querySelector("input[name=document_kind]:checked");
    var one = form.querySelector(".kyc-one-kind[data-sides]");
    var source = checked || one;
    if (source) return source.getAttribute("data-sides").split(" ");
    return radios.length ? [] : null; // nothing chosen yet: no file inputs
  }

  function showSides(form) {
    var sides = sidesOf(form);
    form.querySelectorAll("[data-side-field]").forEach(function (wrap) {
      var needed = !sides || sides.indexOf(wrap.getAttribute("data-side-field")) !== -1;
      wrap.hidden = !needed;
      var input = wrap.querySelector("input[type=file]");
      if (input) input.disabled = !needed;
    });
  }

  function checkFiles(input) {
    var max = parseInt(input.getAttribute("data-max-bytes"), 10);
    var wrap = input.closest("[data-side-field]");
    var out = wrap && wrap.querySelector(".kyc-size-error");
    var message = "";
    var files = Array.prototype.slice.call(input.files || []);
    var maxFiles = parseInt(input.getAttribute("data-max-files"), 10);
    if (maxFiles && files.length > maxFiles) {
      message = "Choose at most " + maxFiles + " files.";
    }
    files.forEach(function (file) {
      if (!message && max && file.size > max) {
        message = "\u201c" + file.name + "\u201d is larger than " + Math.round(max / 1048576) +
          " MB: choose a smaller photo or scan.";
      }
    });
    input.setCustomValidity(message);
    if (out) {
      out.textContent = message;
      out.hidden = !message;
    }
    if (message) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
    return !message;
  }

  function init(form) {
    showSides(form);
    form.addEventListener("change", function (event) {
      if (event.target.name === "document_kind") showSides(form);
      if (event.target.type === "file") checkFiles(event.target);
    });
    form.addEventListener("submit", function (event) {
      var ok = true;
      form.querySelectorAll("input[type=file]:not(:disabled)").forEach(function (input) {
        ok = checkFiles(input) && ok;
      });
      if (!ok) {
        event.preventDefault();
        var bad = form.querySelector("input[type=file][aria-invalid=true]");
        if (bad) bad.focus();
        return;
      }
      var button = form.querySelector("button[type=submit]");
      if (button) {
        button.disabled = true;
        button.textContent = "Uploading\u2026";
      }
    });
  }

  function ready() {
    document.querySelectorAll("form[data-kyc-document]").forEach(init);
  }

  // Back from the next page (the browser's page cache): the button works again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-kyc-document] button[type=submit]").forEach(function (b) {
      b.disabled = false;
      b.textContent = "Send for review";
    });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
