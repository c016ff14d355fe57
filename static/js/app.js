// Small progressive enhancements; every page works without this file.
document.addEventListener("click", function (event) {
  var toggle = event.target.closest("[data-nav-toggle]");
  if (toggle) {
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("nav-open", open);
    return;
  }
  if (event.target.closest("[data-print]")) {
    window.print();
  }
});
