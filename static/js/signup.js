// The sign-up form, one step at a time (progressive: without this file every
// step shows and the form works as one page). When the country or promo code
// changes, htmx swaps in the form of the flow that now applies; what the
// visitor typed is put back into the fields that remain (values stay in the
// page: the request carries only the country and promo code).
(function () {
  "use strict";

  var KEEP_FROM_SERVER = { csrfmiddlewaretoken: 1, flow: 1, country: 1, promo_code: 1 };
  var saved = null;
  var savedStep = null;
  var trigger = null;

  function steps(form) {
    return Array.prototype.slice.call(form.querySelectorAll(".signup-step"));
  }

  function show(form, number, focus) {
    var all = steps(form);
    all.forEach(function (step, i) {
      step.classList.toggle("current", i + 1 === number);
    });
    form.dataset.step = String(number);
    form.toggleAttribute("data-last-step", number === all.length);
    if (focus) {
      var first = all[number - 1].querySelector("input:not([type=hidden]), select, textarea");
      if (first) first.focus();
      form.scrollIntoView({ block: "start", behavior: "smooth" });
    }
  }

  function current(form) {
    return parseInt(form.dataset.step || "1", 10);
  }

  function stepValid(step) {
    var fields = step.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i++) {
      if (!fields[i].checkValidity()) {
        fields[i].reportValidity();
        return false;
      }
    }
    return true;
  }

  // Start on the first step with an error, else on ``start`` (the step the
  // visitor was on before the form was swapped), else on the first.
  function init(form, start) {
    var all = steps(form);
    if (all.length < 2) {
      form.removeAttribute("data-steps-ready");
      form.removeAttribute("data-last-step");
      return;
    }
    form.setAttribute("data-steps-ready", "");
    form.querySelectorAll("[data-step-nav]").forEach(function (nav) { nav.hidden = false; });
    var number = Math.min(Math.max(start || 1, 1), all.length);
    var invalid = form.querySelector(".has-error, [aria-invalid=true]");
    var step = invalid && invalid.closest(".signup-step");
    if (step) number = all.indexOf(step) + 1;
    show(form, number, false);
  }

  function collect(root) {
    var values = {};
    root.querySelectorAll("input[name], select[name], textarea[name]").forEach(function (el) {
      if (KEEP_FROM_SERVER[el.name] || el.type === "hidden") return;
      if (el.type === "checkbox" || el.type === "radio") {
        values[el.name] = values[el.name] || [];
        if (el.checked) values[el.name].push(el.value);
      } else {
        values[el.name] = el.value;
      }
    });
    return values;
  }

  function restore(root, values) {
    root.querySelectorAll("input[name], select[name], textarea[name]").forEach(function (el) {
      if (!(el.name in values)) return;
      var value = values[el.name];
      if (el.type === "checkbox" || el.type === "radio") {
        el.checked = value.indexOf(el.value) !== -1;
      } else if (el.tagName === "SELECT") {
        if (el.querySelector("option[value='" + CSS.escape(value) + "']")) el.value = value;
      } else {
        el.value = value;
      }
    });
  }

  document.addEventListener("click", function (event) {
    var form = event.target.closest("form[data-signup]");
    if (!form) return;
    if (event.target.closest("[data-step-next]")) {
      var step = steps(form)[current(form) - 1];
      if (stepValid(step)) show(form, current(form) + 1, true);
    } else if (event.target.closest("[data-step-back]")) {
      show(form, current(form) - 1, true);
    }
  });

  // Before sending, every step is checked as "Next" checks one: a field left
  // empty on an earlier step (the passwords, which a refused form does not
  // send back) opens that step instead of a round trip.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-signup][data-steps-ready]")) return;
    var all = steps(form);
    for (var i = 0; i < all.length; i++) {
      var invalid = all[i].querySelector("input:invalid, select:invalid, textarea:invalid");
      if (invalid) {
        event.preventDefault();
        show(form, i + 1, false);
        invalid.focus();
        invalid.reportValidity();
        return;
      }
    }
  });

  // Enter in a field of an earlier step goes to the next step, not to "Sign up".
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.target.tagName === "TEXTAREA") return;
    var form = event.target.closest("form[data-signup][data-steps-ready]");
    if (!form || form.hasAttribute("data-last-step") || event.target.tagName === "BUTTON") return;
    event.preventDefault();
    var next = steps(form)[current(form) - 1].querySelector("[data-step-next]");
    if (next) next.click();
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.id !== "signup-body") return;
    var form = event.detail.target.closest("form[data-signup]");
    saved = collect(event.detail.target);
    savedStep = form.hasAttribute("data-steps-ready") ? current(form) : 1;
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    trigger = elt && elt.name ? elt.name : null;
  });

  // After the settle, not the swap: while settling, htmx puts back the
  // server's attributes (class) on elements whose ids were there before.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target.id !== "signup-body") return;
    var form = event.detail.target.closest("form[data-signup]");
    if (saved) restore(event.detail.target, saved);
    init(form, savedStep);
    // Focus back where it was, when that field is on the step shown.
    var field = trigger && form.querySelector("[name='" + trigger + "']");
    var step = field && field.closest(".signup-step");
    if (field && (!form.hasAttribute("data-steps-ready") || step.classList.contains("current"))) {
      field.focus();
    }
    saved = savedStep = trigger = null;
  });

  function ready() {
    document.querySelectorAll("form[data-signup]").forEach(function (form) { init(form, 1); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
