// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A confirmation before an action that changes who sees a document.
  document.querySelectorAll("button[data-confirm]").forEach(function (button) {
    button.form.addEventListener("submit", function (event) {
      if (event.submitter === button && !window.confirm(button.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
  // Bring a status message to screen readers and keyboard users after an action.
  var notice = document.querySelector(".notice");
  if (notice) {
    document.getElementById("contenu").focus();
  }
});
