// Entry point of the Runwatch UI, shared by the desktop window and the browser.
import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";

mount(App, { target: document.getElementById("app")! });
