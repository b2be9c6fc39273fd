// The printer-friendly page's Print button (a file, so the page's CSP needs no inline script).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print");
  if (button) {
    button.addEventListener("click", function () { window.print(); });
  }
});
