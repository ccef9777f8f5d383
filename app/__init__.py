"""Helpdesk (工单系统) backend."""
