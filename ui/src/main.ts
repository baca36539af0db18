// Entry point of the Runwatch UI, shared by the desktop window and the browser.
import { mount } from "svelte";
import App from "./App.svelte";
import { applyTheme, storedTheme } from "./theme";
import "./app.css";

// Before the first paint, so a chosen theme does not flash.
applyTheme(storedTheme());

mount(App, { target: document.getElementById("app")! });
